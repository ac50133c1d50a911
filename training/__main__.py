"""``python -m training``: the same command as ``iris-service train``."""
from .command import train

if __name__ == "__main__":
    train(prog_name="python -m training")
