from services.wallet.app import run

run()
