"""`python -m doctorkit.deid INPUT --out OUTPUT`: see command.py."""
from doctorkit.deid.command import run

if __name__ == "__main__":
    run()
