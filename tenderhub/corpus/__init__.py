"""The bad-input corpus: hostile events sent through the real outbox and straight into the data topics, with what
must become of each (dead-lettered with a reason, or stored harmlessly), and a runner that proves it against a
relay and a worker of their own (`tenderhub corpus`)."""
