"""Params: ``params/<env>.yaml`` as msgspec structs (``extends``, overrides, durations and UTC times),
secret references and their masking, and the files an environment names."""
