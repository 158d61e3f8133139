"""The ``cutover`` command.  Light on purpose: :mod:`.entry` answers ``--help`` and a plain
``params check`` without loading typer; everything else goes to the typer app in :mod:`.app`."""
