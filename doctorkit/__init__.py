"""DoctorKit: low-cost PEFT fine-tuning of Chinese medical dialog models on one GPU."""
__version__ = "0.1.0"
