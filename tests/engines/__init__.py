"""Real engines for the tests: launchers and schedulers started for real.

Every engine lives in its own module and is exposed as a pytest fixture from
``tests/conftest.py``. An engine that cannot be found skips its tests, except
under ``FOEHN_REQUIRE_ENGINES=1`` (CI), where a missing engine is a failure.
"""
