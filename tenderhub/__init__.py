"""The tenderhub command line: dev stack provisioner, migrations, smoke run."""
