"""pytest plugin for saadi plugin authors (fixtures and conformance checks); filled in by the
plugin-author tooling. Must stay import-light: pytest loads it in every session."""
