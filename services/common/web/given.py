"""`Given[T]`: how a handler declares a dependency registered on the app (its settings,
a store, the caller), by name and type. Litestar asks for named dependencies to be
marked (NamedDependency); the value is the app's own object, so it is not validated
again on every request (SkipValidation: a Protocol type could not be)."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from litestar.datastructures import State
from litestar.di import Dependency, Provide
from litestar.params import SkipValidationMarker

T = TypeVar("T")

Given = Annotated[T, Dependency(kind="named"), SkipValidationMarker()]


def from_state(key: str) -> Provide:
    """The dependency that is the app state's `key`: an object the app made once (in
    `create_app` or its lifespan), handed to every handler that declares it."""

    async def provide(state: State) -> Any:
        return state[key]

    return Provide(provide)
