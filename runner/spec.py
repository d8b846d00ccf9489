"""The GridSearch manifest: its typed model, parsing and field-level validation.

Called by the CLI, the shard runner, the reducer and the operator. Everything
here is checkable without importing any user-named module: the operator
relies on that. Checks that need the estimator class or the data live in
:mod:`kubegrid.validation`.

Field names are camelCase in the manifest and snake_case in Python; a pydantic
error location is translated back to the manifest's dotted path
(``spec.cv.nSplits``) so that messages name what the user wrote.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from kubegrid.errors import SpecError

API_VERSION = "kubegrid.io/v1alpha1"
KIND = "GridSearch"

SPLITTERS = (
    "KFold",
    "StratifiedKFold",
    "GroupKFold",
    "StratifiedGroupKFold",
    "ShuffleSplit",
    "StratifiedShuffleSplit",
    "RepeatedKFold",
    "RepeatedStratifiedKFold",
    "TimeSeriesSplit",
    "LeaveOneGroupOut",
)
GROUP_SPLITTERS = ("GroupKFold", "StratifiedGroupKFold", "LeaveOneGroupOut")

# scipy.stats distributions a random search may sample from, with the keyword
# arguments each accepts (scipy's own names, so its documentation applies).
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "loguniform": ("a", "b"),
    "uniform": ("loc", "scale"),
    "randint": ("low", "high"),
    "norm": ("loc", "scale"),
    "expon": ("loc", "scale"),
    "lognorm": ("s", "loc", "scale"),
    "beta": ("a", "b", "loc", "scale"),
    "gamma": ("a", "loc", "scale"),
    "poisson": ("mu", "loc"),
    "geom": ("p", "loc"),
}

_DOTTED_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class _Model(BaseModel):
    """Shared settings: camelCase aliases, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class SecretRef(_Model):
    """A Secret holding S3 credentials (and perhaps the endpoint); only its
    name and keys travel."""

    name: str
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"
    session_token_key: str | None = None
    endpoint_url_key: str | None = None


class Storage(_Model):
    """How to reach S3-compatible object storage for the dataset and output."""

    endpoint_url: str | None = None
    region: str | None = None
    secret_ref: SecretRef | None = None


class Holdout(_Model):
    """A test set kept out of the search: another dataset, or a seeded fraction."""

    uri: str | None = None
    fraction: Annotated[float, Field(gt=0, lt=1)] | None = None
    stratify: bool = True
    random_state: int | None = 0

    @model_validator(mode="after")
    def _one_source(self) -> Holdout:
        if (self.uri is None) == (self.fraction is None):
            raise ValueError("give exactly one of 'uri' or 'fraction'")
        return self


class Dataset(_Model):
    """Where the data lives and which columns play which role."""

    uri: Annotated[str, Field(min_length=1)]
    format: Literal["csv", "parquet"] | None = None
    target: Annotated[str, Field(min_length=1)]
    features: list[str] | None = None
    groups: str | None = None
    holdout: Holdout | None = None

    @property
    def resolved_format(self) -> str:
        """The explicit format, else the one the URI's suffix implies."""
        if self.format:
            return self.format
        suffix = self.uri.rsplit("?", 1)[0].lower()
        if suffix.endswith((".parquet", ".pq")):
            return "parquet"
        return "csv"

    @model_validator(mode="after")
    def _roles_do_not_overlap(self) -> Dataset:
        features = self.features or []
        if self.target in features:
            raise ValueError(f"target column {self.target!r} is also in 'features'")
        if self.groups and self.groups in features:
            raise ValueError(
                f"groups column {self.groups!r} is also in 'features': groups only "
                "decide the splits and are never a feature"
            )
        return self


class Step(_Model):
    """One named step of a pipeline."""

    name: Annotated[str, Field(min_length=1)]
    class_: Annotated[str, Field(alias="class")]
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("class_")
    @classmethod
    def _dotted(cls, value: str) -> str:
        return _check_dotted_path(value)

    @field_validator("name")
    @classmethod
    def _no_dunder(cls, value: str) -> str:
        if "__" in value:
            raise ValueError(
                f"step name {value!r} contains '__', which scikit-learn reserves "
                "to address a step's parameters; rename the step"
            )
        return value


class Estimator(_Model):
    """A single estimator class with fixed params, or a pipeline of steps."""

    class_: Annotated[str | None, Field(alias="class")] = None
    params: dict[str, Any] = Field(default_factory=dict)
    pipeline: list[Step] | None = None

    @field_validator("class_")
    @classmethod
    def _dotted(cls, value: str | None) -> str | None:
        return None if value is None else _check_dotted_path(value)

    @model_validator(mode="after")
    def _one_kind(self) -> Estimator:
        if (self.class_ is None) == (self.pipeline is None):
            raise ValueError("give exactly one of 'class' or 'pipeline'")
        if self.pipeline is not None:
            if not self.pipeline:
                raise ValueError("'pipeline' needs at least one step")
            if self.params:
                raise ValueError("'params' goes on each pipeline step, not here")
            names = [step.name for step in self.pipeline]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"pipeline step names repeat: {duplicates}")
        return self

    def class_paths(self) -> list[str]:
        """Every class this estimator names, in step order."""
        if self.pipeline is not None:
            return [step.class_ for step in self.pipeline]
        assert self.class_ is not None
        return [self.class_]


class Search(_Model):
    """Grid or random search, and the guard against runaway grids."""

    type: Literal["grid", "random"] = "grid"
    n_iter: Annotated[int, Field(ge=1)] = 10
    random_state: int | None = None
    max_candidates: Annotated[int, Field(ge=1)] = 100_000

    @model_validator(mode="after")
    def _random_only_fields(self) -> Search:
        # A grid search lists every candidate: these would be silently ignored.
        given = [
            to_camel(f)
            for f in ("n_iter", "random_state")
            if f in self.model_fields_set
        ]
        if self.type == "grid" and given:
            verb, pronoun = ("apply", "them") if len(given) > 1 else ("applies", "it")
            raise ValueError(
                f"{' and '.join(given)} {verb} to a random search only; remove "
                f"{pronoun}, or set type: random"
            )
        return self


class CV(_Model):
    """A scikit-learn splitter by name, with its arguments in camelCase."""

    splitter: Literal[SPLITTERS]  # type: ignore[valid-type]
    n_splits: Annotated[int, Field(ge=2)] | None = None
    n_repeats: Annotated[int, Field(ge=1)] | None = None
    shuffle: bool | None = None
    random_state: int | None = None
    test_size: Annotated[float, Field(gt=0)] | None = None
    train_size: Annotated[float, Field(gt=0)] | None = None
    max_train_size: Annotated[int, Field(ge=1)] | None = None
    gap: Annotated[int, Field(ge=0)] | None = None

    @field_validator("splitter", mode="before")
    @classmethod
    def _known_splitter(cls, value: Any) -> Any:
        # Checked here rather than by the Literal, whose message lists every
        # name but cannot point at the one the user meant.
        if isinstance(value, str) and value not in SPLITTERS:
            close = difflib.get_close_matches(value, SPLITTERS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown splitter {value!r}; {hint}kubegrid supports "
                f"{', '.join(SPLITTERS)}"
            )
        return value


class Output(_Model):
    """Where results go: ``s3://bucket/prefix`` or a local directory."""

    uri: Annotated[str, Field(min_length=1)]


class Sharding(_Model):
    """How tasks are cut into shards (Job completion indexes)."""

    shards: Annotated[int, Field(ge=1)] | None = None
    tasks_per_shard: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _at_most_one(self) -> Sharding:
        if self.shards is not None and self.tasks_per_shard is not None:
            raise ValueError("give 'shards' or 'tasksPerShard', not both")
        return self


class Resources(_Model):
    """Kubernetes requests and limits for each shard pod."""

    requests: dict[str, str | int | float] = Field(default_factory=dict)
    limits: dict[str, str | int | float] = Field(default_factory=dict)

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(
        cls, value: dict[str, str | int | float]
    ) -> dict[str, str | int | float]:
        for name, quantity in value.items():
            _check_quantity(name, quantity)
        return value


class Pod(_Model):
    """Scheduling settings passed through to every pod the search creates."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] = Field(default_factory=dict)
    priority_class_name: str | None = None
    service_account_name: str | None = None
    image_pull_secrets: list[str] = Field(default_factory=list)


class Job(_Model):
    """Retry and lifetime settings of the Jobs."""

    backoff_limit_per_index: Annotated[int, Field(ge=0)] = 2
    max_failed_indexes: Annotated[int, Field(ge=0)] = 0
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] = 86_400


ResponseMethod = Literal["predict", "predict_proba", "decision_function"]


class CostMatrix(_Model):
    """The cost of each outcome: ``costs[i][j]`` for true ``labels[i]``
    predicted as ``labels[j]``. Checked in :mod:`kubegrid.metrics`."""

    labels: Annotated[list[int | str | bool], Field(min_length=2)]
    costs: list[list[float]]


class Metric(_Model):
    """A scorer declared in the manifest: a ``sklearn.metrics`` function by
    name, or a cost matrix. Checked and built in :mod:`kubegrid.metrics`."""

    metric: Annotated[str, Field(min_length=1)] | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    greater_is_better: bool | None = None
    response_method: ResponseMethod | list[ResponseMethod] | None = None
    cost_matrix: CostMatrix | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Metric:
        if (self.metric is None) == (self.cost_matrix is None):
            raise ValueError("give exactly one of 'metric' or 'costMatrix'")
        return self


class Threshold(_Model):
    """Tune the decision threshold of the refit binary classifier."""

    metric: Annotated[str, Field(min_length=1)]
    thresholds: Annotated[int, Field(ge=2)] = 100
    cv: Annotated[int, Field(ge=2)] = 5


ErrorScore = Literal["nan", "raise"] | float


class GridSearchSpec(_Model):
    """The ``spec`` of a GridSearch: what to search, on what data, how."""

    dataset: Dataset
    estimator: Estimator
    param_grid: dict[str, Any] | list[dict[str, Any]]
    search: Search = Field(default_factory=Search)
    cv: Annotated[int, Field(ge=2)] | CV = 5
    scoring: str | list[str] | dict[str, str | Metric] | None = None
    refit: bool | str = True
    threshold: Threshold | None = None
    return_train_score: bool = False
    error_score: ErrorScore = "nan"
    output: Output
    storage: Storage = Field(default_factory=Storage)
    parallelism: Annotated[int, Field(ge=1)] = 4
    sharding: Sharding = Field(default_factory=Sharding)
    resources: Resources = Field(default_factory=Resources)
    image: str | None = None
    pod: Pod = Field(default_factory=Pod)
    job: Job = Field(default_factory=Job)
    queue_name: str | None = None
    suspend: bool = False

    @field_validator("param_grid")
    @classmethod
    def _grid_shape(
        cls, value: dict[str, Any] | list[dict[str, Any]]
    ) -> dict[str, Any] | list[dict[str, Any]]:
        grids = value if isinstance(value, list) else [value]
        if not grids:
            raise ValueError("the grid is empty: give at least one mapping")
        for grid in grids:
            for name in grid:
                if not isinstance(name, str) or not name:
                    raise ValueError(f"parameter name {name!r} must be a string")
        return value

    @field_validator("scoring")
    @classmethod
    def _scoring_shape(
        cls, value: str | list[str] | dict[str, str | Metric] | None
    ) -> str | list[str] | dict[str, str | Metric] | None:
        if isinstance(value, list | dict) and not value:
            raise ValueError("give at least one scorer, or leave 'scoring' out")
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ValueError("scorer names repeat in the list")
        return value

    @field_validator("error_score", mode="before")
    @classmethod
    def _error_score(cls, value: Any) -> Any:
        # YAML's .nan arrives as a float; keep "nan" as the one spelling.
        if isinstance(value, float) and math.isnan(value):
            return "nan"
        if isinstance(value, bool):
            raise ValueError("use 'nan', 'raise' or a number")
        return value

    @property
    def error_score_value(self) -> float | str:
        """errorScore as scikit-learn's ``error_score`` takes it."""
        return math.nan if self.error_score == "nan" else self.error_score

    @property
    def metric_names(self) -> list[str]:
        """The metric keys cv_results uses (``score`` for a single metric)."""
        if isinstance(self.scoring, list):
            return list(self.scoring)
        if isinstance(self.scoring, dict):
            return list(self.scoring)
        return ["score"]

    @property
    def multimetric(self) -> bool:
        return isinstance(self.scoring, list | dict)

    @property
    def refit_metric(self) -> str | None:
        """The metric that picks the best candidate, or None when none does."""
        if not self.multimetric:
            return "score"
        return self.refit if isinstance(self.refit, str) else None


class Metadata(BaseModel):
    """Kubernetes object metadata; only the name is required."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=63)]
    namespace: str | None = None

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        # Child objects are named after the search, so it must be a DNS label.
        if not _DNS_LABEL.match(value):
            raise ValueError(
                f"{value!r} is not a valid name: use lowercase letters, digits "
                "and '-', starting and ending with a letter or digit"
            )
        return value


class GridSearch(BaseModel):
    """A whole GridSearch manifest."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    api_version: Literal["kubegrid.io/v1alpha1"]
    kind: Literal["GridSearch"]
    metadata: Metadata
    spec: GridSearchSpec
    status: dict[str, Any] | None = None


def parse(document: dict[str, Any]) -> GridSearch:
    """Validate a manifest already read into a dict.

    Raises SpecError naming the first bad field, with every problem listed.
    """
    if not isinstance(document, dict):
        raise SpecError("(manifest)", "expected a YAML mapping with apiVersion/kind")
    try:
        search = GridSearch.model_validate(document)
    except ValidationError as exc:
        raise _spec_error(exc) from None
    _check_refit(search.spec)
    _check_groups(search.spec)
    return _name_single_metric(search)


def _name_single_metric(search: GridSearch) -> GridSearch:
    """Let ``threshold.metric`` name a single scorer as the user wrote it.

    scikit-learn keys a single metric as ``score`` in cv_results; users write
    the scorer's own name (``accuracy``), so that spelling is accepted too.
    """
    spec = search.spec
    threshold = spec.threshold
    if (
        threshold is None
        or spec.multimetric
        or not isinstance(spec.scoring, str)
        or threshold.metric != spec.scoring
    ):
        return search
    renamed = threshold.model_copy(update={"metric": "score"})
    spec = spec.model_copy(update={"threshold": renamed})
    return search.model_copy(update={"spec": spec})


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-3`` as a float as YAML 1.2 does.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-3``), so
    ``C: [1e-3, 1e3]`` would arrive as strings; kubectl and the API server
    read the same text as numbers, and so must kubegrid.
    """


Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load(path: str | Path) -> GridSearch:
    """Read and validate a manifest file (the first GridSearch document in it)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError("(manifest)", f"cannot read {str(path)!r}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            "(manifest)", f"{path} is not UTF-8 text, as YAML must be: {exc}"
        ) from None
    try:
        documents = [d for d in yaml.load_all(text, Loader=Loader) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError("(manifest)", f"{path} is not valid YAML: {exc}") from None
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == KIND:
            return parse(document)
    if documents:
        return parse(documents[0])
    raise SpecError("(manifest)", f"{path} holds no GridSearch document")


def dump(search: GridSearch) -> dict[str, Any]:
    """The manifest as a plain dict with camelCase keys, defaults left out."""
    return search.model_dump(by_alias=True, exclude_none=True, exclude_unset=True)


def _spec_error(exc: ValidationError) -> SpecError:
    """Turn pydantic's report into one SpecError naming manifest fields."""
    errors = [(_field_path(e["loc"]), e) for e in exc.errors()]

    # A union (cv: int or mapping) reports a type mismatch for every member it
    # tried; when a deeper error explains the value, the mismatch is noise.
    # The same holds when another member failed on this very field for a
    # reason other than its type (a metric definition's own check).
    deeper = {field for field, _ in errors}
    explained = {f for f, e in errors if not str(e["type"]).endswith("_type")}
    errors = [
        (field, e)
        for field, e in errors
        if not (
            str(e["type"]).endswith("_type")
            and (
                field in explained
                or any(d.startswith((field + ".", field + "[")) for d in deeper)
            )
        )
    ]

    # A misspelt field is also reported missing under its real name; the
    # "did you mean" of the unknown one says all there is to say.
    suggested = {
        f"{field.rpartition('.')[0]}.{close}"
        for field, e in errors
        if e["type"] == "extra_forbidden"
        for close in _close_field_names(str(e["loc"][-1]))
    }
    errors = [
        (field, e)
        for field, e in errors
        if not (e["type"] == "missing" and field in suggested)
    ] or errors

    # A value that fits no member of a union is refused once per member, each
    # refusal naming one shape; one line saying what the field takes is clearer.
    errors = _merge_union_mismatches(errors)

    # SpecError puts the first field in front; the others name their own.
    lines = [f"{field}: {_explain(error)}" for field, error in errors]
    first_field = errors[0][0] if errors else "(manifest)"
    message = "; ".join([lines[0].split(": ", 1)[1], *lines[1:]])
    return SpecError(first_field, message)


def _field_path(loc: tuple[int | str, ...]) -> str:
    """('spec', 'cv', 'CV', 'nSplits') → 'spec.cv.nSplits'."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif (
            item in _UNION_TAGS
            or item.startswith(("function-", "constrained-"))
            or _TYPE_TAG.match(item)
        ):
            # pydantic names the union member it tried; users never wrote it.
            continue
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "(manifest)"


# pydantic's names for members of nested unions, such as
# "dict[str,union[str,...]]" or "literal['predict',...]".
_TYPE_TAG = re.compile(r"^(dict|list|literal|union|tuple)\[.*\]$")

_UNION_TAGS = {
    "CV",
    "Metric",
    "int",
    "str",
    "float",
    "bool",
    "list[str]",
    "dict[str,str]",
    "dict[str,any]",
    "list[dict[str,any]]",
    "literal['nan','raise']",
    "literal['grid','random']",
}


# What each field with several shapes accepts, in the manifest's terms; a "*"
# stands for one key the user chose (a scorer's name, a resource's).
_ACCEPTED = {
    "spec.errorScore": "'raise', 'nan' or a number",
    "spec.paramGrid": (
        "a mapping of parameter names to lists of values ({distribution: ...} "
        "in a random search), or a list of such mappings"
    ),
    "spec.paramGrid[*]": "a mapping of parameter names to lists of values",
    "spec.cv": "a number of folds (2 or more), or a mapping naming a splitter",
    "spec.scoring": (
        "a scorer name, a list of scorer names, or a mapping of names to scorers"
    ),
    "spec.scoring.*": "a scorer name, or a mapping with 'metric' or 'costMatrix'",
    "spec.scoring.*.responseMethod": (
        "'predict', 'predict_proba' or 'decision_function', or a list of them"
    ),
    "spec.refit": "true, false, or the name of a scorer",
    "spec.resources.*.*": "a Kubernetes quantity, such as '500m', '2' or '4Gi'",
}

# pydantic's error types for a value of the wrong shape, by the shape expected.
_SHAPES = {
    "string": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "a boolean (true or false)",
    "list": "a list",
    "dict": "a mapping",
    "model": "a mapping",
    "model_attributes": "a mapping",
}


def _merge_union_mismatches(
    errors: list[tuple[str, Any]],
) -> list[tuple[str, Any]]:
    """One error for each field whose value has none of the shapes it may take.

    A field keeps its errors as they are when any of them is about something
    other than the value's shape (a number out of range, a missing key).
    """
    by_field: dict[str, list[Any]] = {}
    for field, error in errors:
        by_field.setdefault(field, []).append(error)
    merged = []
    for field, found in by_field.items():
        accepted = _accepted(field)
        if all(_is_mismatch(e) for e in found) and (accepted or len(found) > 1):
            expected = accepted or _join(_shape(e) for e in found)
            merged.append((field, _mismatch(found[0], expected)))
        else:
            merged.extend((field, e) for e in found)
    return merged


def _accepted(field: str) -> str | None:
    for pattern, accepted in _ACCEPTED.items():
        if re.fullmatch(re.escape(pattern).replace(r"\*", r"[^.\[]+"), field):
            return accepted
    return None


def _is_mismatch(error: Any) -> bool:
    kind = str(error["type"])
    return kind.endswith(("_type", "_parsing")) or kind == "literal_error"


def _shape(error: Any) -> str:
    kind = str(error["type"])
    if kind == "literal_error":
        return str(error.get("ctx", {}).get("expected", "one of the listed values"))
    shape = _SHAPES.get(kind.rsplit("_", 1)[0])
    return shape or str(error["msg"]).removeprefix("Input should be ")


def _join(items: Iterable[str]) -> str:
    """'a', 'a or b', 'a, b or c'; each item once."""
    unique = list(dict.fromkeys(items))
    return " or ".join([", ".join(unique[:-1]), unique[-1]] if unique[1:] else unique)


def _mismatch(error: Any, expected: str) -> dict[str, Any]:
    """An error in pydantic's form, for :func:`_explain`, saying what is accepted."""
    return {
        "type": "shape_mismatch",
        "loc": error["loc"],
        "msg": f"expected {expected}",
        "input": error.get("input"),
    }


def _explain(error: Any) -> str:
    """A short reason in the user's terms, with the value that was given."""
    kind = error["type"]
    given = error.get("input")
    if kind == "extra_forbidden":
        name = str(error["loc"][-1])
        close = _close_field_names(name)
        hint = f"did you mean {close[0]!r}?" if close else "remove it"
        return f"unknown field {name!r}; {hint}"
    if kind == "missing":
        return "required field is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind in ("value_error", "assertion_error"):
        return message
    return f"{message} (got {given!r})"


def _close_field_names(name: str) -> list[str]:
    """The known field name closest to a misspelt one, if any is close."""
    return difflib.get_close_matches(name, _known_field_names(), n=1)


def _known_field_names() -> list[str]:
    """Every camelCase field name the manifest knows, for spelling hints."""
    names: set[str] = set()
    models: list[type[BaseModel]] = [GridSearch, *_Model.__subclasses__()]
    for model in models:
        for name, info in model.model_fields.items():
            names.add(info.alias or name)
    return sorted(names)


def _check_dotted_path(value: str) -> str:
    if not _DOTTED_PATH.match(value):
        raise ValueError(
            f"{value!r} is not an import path; write module and class, "
            "for example 'sklearn.svm.SVC'"
        )
    return value


def _check_quantity(name: str, quantity: str | int | float) -> None:
    from kubernetes.utils.quantity import parse_quantity

    try:
        amount = parse_quantity(quantity)
    except (ValueError, TypeError):
        raise ValueError(
            f"{name}: {quantity!r} is not a Kubernetes quantity "
            "(examples: '500m' or '2' CPUs, '512Mi' or '4Gi' of memory)"
        ) from None
    if amount <= 0:
        raise ValueError(f"{name}: {quantity!r} must be greater than zero")


def _check_refit(spec: GridSearchSpec) -> None:
    names = spec.metric_names
    if isinstance(spec.refit, str) and spec.refit not in names:
        if not spec.multimetric:
            raise SpecError(
                "spec.refit",
                f"{spec.refit!r} names a metric, but 'scoring' is a single metric; "
                "use refit: true",
            )
        raise SpecError(
            "spec.refit",
            f"{spec.refit!r} is not one of the scorers {names}; name one of them, "
            "or set refit: false",
        )
    if spec.multimetric and spec.refit is True:
        raise SpecError(
            "spec.refit",
            f"with a list or mapping of scorers, name the one that picks the best "
            f"candidate, one of {names}, or set refit: false",
        )


def _check_groups(spec: GridSearchSpec) -> None:
    splitter = spec.cv.splitter if isinstance(spec.cv, CV) else None
    if splitter in GROUP_SPLITTERS and not spec.dataset.groups:
        raise SpecError(
            "spec.dataset.groups",
            f"cv.splitter {splitter} splits by group: set dataset.groups to the "
            "column holding each row's group",
        )
