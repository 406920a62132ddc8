from waitlist.entrypoints.cli import run

run()
