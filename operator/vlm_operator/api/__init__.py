"""The API, pure: the VisionModel models (the single source of the CRD), the operator's
configuration file, CRD generation and offline validation. May import catalog.engine (the pinned
engine the configuration defaults to), nothing else of the package."""
