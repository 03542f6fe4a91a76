"""`python -m services.ingest` runs the ingest service."""

from services.common.runtime.serve import serve
from services.ingest.app import create_app
from services.ingest.settings import load_settings

serve(load_settings, create_app)
