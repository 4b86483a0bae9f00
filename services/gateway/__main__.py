from services.gateway.app import run

run()
