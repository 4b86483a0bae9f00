from services.access.app import run

run()
