from booking.entrypoints.cli import run

run()
