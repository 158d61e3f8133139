"""Params: ``params/<env>.yaml`` as pydantic models (``extends``, overrides, durations and UTC times),
secret references and their masking, and the files an environment names."""
