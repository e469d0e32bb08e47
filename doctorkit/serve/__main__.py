from doctorkit.serve.cli import run

run()
