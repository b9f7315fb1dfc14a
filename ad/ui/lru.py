"""A small thread-safe cache that forgets the least recently used entry first."""

import threading
from collections import OrderedDict


class LRU:
    """At most `maxsize` entries; `get` counts as a use. Shared by every visitor, so locked."""

    def __init__(self, maxsize):
        self.maxsize, self.entries, self.lock = maxsize, OrderedDict(), threading.Lock()

    def get(self, key, default=None):
        with self.lock:
            if key not in self.entries:
                return default
            self.entries.move_to_end(key)
            return self.entries[key]

    def put(self, key, value):
        with self.lock:
            self.entries[key] = value
            self.entries.move_to_end(key)
            while len(self.entries) > self.maxsize:
                self.entries.popitem(last=False)
        return value

    def __len__(self):
        return len(self.entries)
