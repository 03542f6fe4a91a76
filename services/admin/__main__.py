"""`python -m services.admin` runs the admin service."""

from services.admin.app import create_app
from services.admin.settings import load_settings
from services.common.runtime.serve import serve

serve(load_settings, create_app)
