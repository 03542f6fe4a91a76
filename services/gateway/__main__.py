"""`python -m services.gateway` runs the gateway."""

from services.common.runtime.serve import serve
from services.gateway.app import create_app
from services.gateway.settings import load_settings

serve(load_settings, create_app)
