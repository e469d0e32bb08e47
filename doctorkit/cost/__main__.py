from doctorkit.cost import run

if __name__ == "__main__":
    run()
