"""One repository per aggregate, each holding its table's statements and encryption rules (see ``bridge.store.tx``)."""
