"""The `admin` and `anonymous` clients talk to the admin app in process (tests/conftest.py
`in_process`) on the session's database; tests of the companion app's front end, CORS
and the rate limits keep stacks of their own, and what crosses the gateway is checked
by tests/e2e."""

from __future__ import annotations

from tests.conftest import in_process_client

admin = in_process_client("admin_app", "admin", "admin")
anonymous = in_process_client("admin_app", None, "anonymous")
