"""minipeft: parameter-efficient fine-tuning by hand, in pure PyTorch."""
__version__ = "0.1.0"
