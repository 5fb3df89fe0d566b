"""Stand-in: the sdist leaves out transformers' export tests; our models are exported outside the model."""


class ExportTesterMixin:
    pass
