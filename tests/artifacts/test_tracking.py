"""pathways.tracking: configuration, registration with aliases, alias lookups, flat params."""

from __future__ import annotations

import mlflow

from pathways import tracking


def _logged_model(name: str) -> str:
    import mlflow.pyfunc

    class Const(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # noqa: ANN001
            return [1] * len(model_input)

    with mlflow.start_run(run_name=f"tracking-{name}"):
        return mlflow.pyfunc.log_model(name=name, python_model=Const(), pip_requirements=[]).model_uri


def test_configure_creates_the_sqlite_folder(mlflow_uri: str, tmp_path) -> None:
    db = tmp_path / "deep" / "er" / "mlflow.db"
    try:
        tracking.configure(f"sqlite:///{db}", "tracking-tests")
        assert db.parent.is_dir()
        assert mlflow.get_tracking_uri() == f"sqlite:///{db}" and mlflow.get_registry_uri() == f"sqlite:///{db}"
        # artifacts beside the database, not under the working directory
        location = mlflow.get_experiment_by_name("tracking-tests").artifact_location
        assert location == (db.parent / "mlartifacts" / "tracking-tests").resolve().as_uri()
        tracking.configure(f"sqlite:///{db}", "tracking-tests")  # configuring again keeps it
        assert mlflow.get_experiment_by_name("tracking-tests").artifact_location == location
    finally:
        tracking.configure(mlflow_uri, "tests")  # the session's registry for the other tests
    assert mlflow.get_tracking_uri() == mlflow_uri


def test_register_points_the_alias_and_set_alias_moves_it(mlflow_uri: str) -> None:
    name = "tracking_test_model"
    assert tracking.alias_version(name) is None  # no model yet
    first = tracking.register(_logged_model(name), name, alias=tracking.CHAMPION, tags={"kind": "const"})
    second = tracking.register(_logged_model(name), name, alias=tracking.CHALLENGER)
    assert (first, second) == ("1", "2")
    assert tracking.alias_version(name) == "1" and tracking.alias_version(name, tracking.CHALLENGER) == "2"
    tracking.set_alias(name, tracking.CHAMPION, second)
    assert tracking.alias_version(name) == "2"
    assert tracking.alias_version(name, "nope") is None
    assert tracking.register(_logged_model(name), name, alias=None) == "3"
    assert tracking.alias_version(name) == "2"  # no alias given: the champion stays


def test_alias_uri_and_flat_params(mlflow_uri: str) -> None:
    assert tracking.alias_uri("ranker") == "models:/ranker@champion"
    assert tracking.alias_uri("als", tracking.CHALLENGER) == "models:/als@challenger"
    with mlflow.start_run(run_name="tracking-params") as run:
        tracking.log_params_flat({"k": 3, "name": "x", "nested": {"a": 1}, "flag": True}, prefix="p.")
        tracking.log_params_flat({})
    params = mlflow.get_run(run.info.run_id).data.params
    assert params == {"p.k": "3", "p.name": "x", "p.nested": "{'a': 1}", "p.flag": "True"}

