"""Stand-in: the sdist leaves out transformers' generation tests; no visionports model generates text."""


class GenerationTesterMixin:
    pass
