from services.auth.app import run

run()
