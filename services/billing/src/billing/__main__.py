from billing.entrypoints.cli import run

run()
