from services.transit.app import run

run()
