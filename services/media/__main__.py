"""`python -m services.media` runs the media service."""

from services.common.runtime.serve import serve
from services.media.app import create_app
from services.media.settings import load_settings

serve(load_settings, create_app)
