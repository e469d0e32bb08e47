"""DoctorKit: low-cost PEFT fine-tuning of Chinese medical dialog models on one GPU."""
import warnings

from doctorkit import offline

__version__ = "0.1.0"

offline.apply()   # before any command imports the hub libraries: see doctorkit/offline.py

# transformers 5 renamed gradient checkpointing to activation checkpointing; PEFT and TRL still call the old
# names internally, which prints a FutureWarning on every run that users can do nothing about.
warnings.filterwarnings("ignore", message=r".*`(is_)?gradient_checkpointing\w*` is deprecated", category=FutureWarning)
