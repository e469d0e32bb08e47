from doctorkit.evaluate.command import run

if __name__ == "__main__":
    run()
