"""`Registry`: fvcore's registry (the class behind `detectron2.utils.registry.Registry`) with config names.

A user project adds a component with a decorator, as Detectron2's projects do with their registries:

    from lt_detectron.modeling import BOX_PREDICTOR_REGISTRY

    @BOX_PREDICTOR_REGISTRY.register("my_head")      # MODEL.LT.BOX_CLASSIFIER: my_head
    class MyBoxPredictor(LTBoxPredictor): ...

`register()` without a name registers under `__name__`, as in fvcore. Iterating yields `(name, object)` pairs, as in
fvcore; `names()` lists the names in registration order. Only fvcore is imported here, so the framework-free layer
(`lt_detectron.losses`) can use it without Detectron2.
"""

from __future__ import annotations

from typing import Any, List, Optional, Union

from fvcore.common.registry import Registry as _FvcoreRegistry

__all__ = ["Registry"]


class Registry(_FvcoreRegistry):
    """fvcore's Registry; `register` also takes the name to register under (a config value such as "cb")."""

    def register(self, obj: Union[Any, str, None] = None, name: Optional[str] = None) -> Any:  # type: ignore[override]
        """`@REG.register()`, `@REG.register("name")`, `REG.register(obj)` or `REG.register(obj, name="name")`."""
        if isinstance(obj, str):
            obj, name = None, obj
        if obj is None:

            def deco(func_or_class: Any) -> Any:
                self._do_register(name or func_or_class.__name__, func_or_class)
                return func_or_class

            return deco
        self._do_register(name or obj.__name__, obj)
        return obj

    def _do_register(self, name: str, obj: Any) -> None:
        if name in self._obj_map:  # a KeyError, not fvcore's assert (which `python -O` would skip)
            raise KeyError(f"{self._name} registry: {name!r} is already registered ({self._obj_map[name]!r}).")
        self._obj_map[name] = obj

    def names(self) -> List[str]:
        """The registered names, in registration order."""
        return list(self._obj_map)

    def get(self, name: str) -> Any:
        if name not in self._obj_map:
            raise KeyError(f"{self._name} registry has no {name!r}; known: {', '.join(self.names())}.")
        return self._obj_map[name]
