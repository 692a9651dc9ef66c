"""nox sessions: `nox` runs tests, lint and typecheck; `nox -s fit -- --frac 1.0 --dropout 0.5` trains."""

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
# torch is 5+ GB: reuse the session environments; each run still re-installs cnnlab and updates its requirements.
nox.options.reuse_venv = "yes"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (real-data tests run when Fashion-MNIST is installed)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "fuzz", "tools", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "fuzz", "tools", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package with mypy."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(default=False)
def fit(session: nox.Session) -> None:
    """Train: `nox -s fit -- --frac 1.0 --dropout 0.5` (arguments after -- go to `cnnlab fit`)."""
    session.install("-e", ".")
    session.run("cnnlab", "fit", *session.posargs)


@nox.session(default=False)
def fuzz(session: nox.Session) -> None:
    """Fuzz the IDX reader and image loader for minutes: `nox -s fuzz -- --seconds 300`."""
    session.install("-e", ".[dev]")
    session.run("python", "fuzz/fuzz_readers.py", *(session.posargs or ["--seconds", "60", "--min-inputs", "200"]))


@nox.session(default=False)
def parity(session: nox.Session) -> None:
    """Step-for-step parity with Keras (TensorFlow CPU, own environment): `nox -s parity -- --epochs 40`."""
    session.install("-e", ".", "tensorflow-cpu>=2.16")
    session.run("python", "benchmarks/parity_keras.py", *session.posargs)
