"""srdc-studies: SRDC (Tang, Chen and Jia, CVPR 2020) as a research harness."""

from srdc.config import SRDCConfig
from srdc.errors import NonFiniteLossError, SRDCInputError

__all__ = ["NonFiniteLossError", "SRDCConfig", "SRDCInputError"]
