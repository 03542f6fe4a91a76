"""The current front-end release's auth calls: the same endpoints and checks as the
seed's, with the outcome in a 200 body (`auth_code`, `auth_msg` in the request's
`language`) instead of an HTTP status.

A request is the current release's when its body carries `language` (`en` or `zh`);
the seed's clients never send it and keep getting the seed's answers.
"""

from __future__ import annotations

from services.admin.companion.accounts import UsernameTaken
from services.common.web.errors import AppError, TooManyRequests

SUCCESS = 200
FAILURE = 500
LOCKED = 429

MESSAGES = {
    "registered": {"en": "Account created.", "zh": "帳號已建立。"},
    "signed_in": {"en": "Signed in.", "zh": "登入成功。"},
    "password_changed": {"en": "Password changed.", "zh": "密碼已變更。"},
    "deleted": {"en": "Account deleted.", "zh": "帳號已刪除。"},
    # The one answer to an unknown user name and to a wrong password.
    "rejected": {"en": "Incorrect username or password.", "zh": "帳號或密碼錯誤。"},
    "taken": {"en": "This username is already taken.", "zh": "此帳號名稱已被使用。"},
    "locked": {
        "en": "Too many failed sign-ins; try again later.",
        "zh": "登入失敗次數過多，請稍後再試。",  # noqa: RUF001 - Chinese punctuation
    },
}


def message(key: str, language: str) -> str:
    return MESSAGES[key][language]


def failure(problem: AppError, language: str) -> tuple[int, str]:
    """The `auth_code` and `auth_msg` of a refused auth call."""
    if isinstance(problem, TooManyRequests):
        return LOCKED, message("locked", language)
    if isinstance(problem, UsernameTaken):
        return FAILURE, message("taken", language)
    return FAILURE, message("rejected", language)
