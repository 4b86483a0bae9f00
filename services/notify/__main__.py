from services.notify.app import run

run()
