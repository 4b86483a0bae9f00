// One MongoDB user per service, limited to its own database (deploy/README.md: MongoDB users).
// Run as a user administrator against the replica set's primary, with each password in the
// environment (never on the command line):
//   SCHOOLCARD_AUTH_MONGO_PASSWORD=... SCHOOLCARD_WALLET_MONGO_PASSWORD=... (and so on) \
//     mongosh "mongodb://admin@mongo-0.mongo.mongodb:27017/admin?replicaSet=rs0&tls=true" \
//     deploy/mongo/create-users.js
// Running it again changes the passwords and roles to what it says (rotation).
// Roles: readWrite (the service's collections, transactions included) and dbAdmin (its
// indexes, and collMod for the TTL of its inbox and outbox) on schoolcard_<service> alone.
const SERVICES = ["auth", "wallet", "access", "transit", "notify"];

for (const service of SERVICES) {
  const dbName = `schoolcard_${service}`;
  const user = `schoolcard-${service}`;
  const variable = `SCHOOLCARD_${service.toUpperCase()}_MONGO_PASSWORD`;
  const pwd = process.env[variable];
  if (!pwd || pwd.length < 24) {
    throw new Error(`${variable}: set it to a random password of 24+ characters`);
  }
  const roles = [{ role: "readWrite", db: dbName }, { role: "dbAdmin", db: dbName }];
  const target = db.getSiblingDB(dbName);
  if (target.getUser(user)) {
    target.updateUser(user, { pwd, roles });
  } else {
    target.createUser({ user, pwd, roles });
  }
  print(`${user}: ${roles.map((r) => r.role).join(", ")} on ${dbName}`);
}
