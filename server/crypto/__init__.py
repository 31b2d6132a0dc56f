"""Gateway identity: one Signer contract, two backends (software key, ATECC608), ES256 compact JWS.

Only the telemetry and command-result builders sign (see server.telemetry.envelope); no
interface of the gateway accepts data from outside and signs it as given.
"""

from .base import Signer, SignerError
from .choose import BACKENDS, open_signer
from .keys import device_id_for, jwk_thumbprint, public_jwk, public_pem

__all__ = [
    "BACKENDS",
    "Signer",
    "SignerError",
    "device_id_for",
    "jwk_thumbprint",
    "open_signer",
    "public_jwk",
    "public_pem",
]
