"""Registries of the soak's kinds: fault kinds (faults.py) and traffic kinds
(traffic.py). A later feature (daemon, TUN, network changes, resumption)
adds its own kinds by writing one small function and decorating it; the
soak's loop, seed, summary and checks need no change.

    @FAULTS.kind("server_kill", weight=3)
    def server_kill(soak, rng): ...            # returns a short note for the log

    @OPS.kind("socks_unresolvable", needs=lambda soak: None if soak.in_netns else "why not")
    def socks_unresolvable(soak, rng, strict): ...

`needs(soak)` returns None when the kind can run here, else the reason it is
skipped (printed once at start).
"""

import collections


class Kind:
    def __init__(self, name, fn, weight, needs):
        self.name = name
        self.fn = fn
        self.weight = weight
        self.needs = needs


class Registry:
    def __init__(self, what):
        self.what = what
        self.kinds = collections.OrderedDict()

    def kind(self, name, weight=1, needs=None):
        def register(fn):
            if name in self.kinds:
                raise ValueError("%s kind %r registered twice" % (self.what, name))
            self.kinds[name] = Kind(name, fn, weight, needs)
            return fn
        return register

    def select(self, soak, only=None, exclude=()):
        """(runnable kinds, {name: reason skipped})."""
        runnable, skipped = [], {}
        for k in self.kinds.values():
            if only and k.name not in only:
                continue
            if k.name in exclude:
                skipped[k.name] = "excluded on the command line"
                continue
            reason = k.needs(soak) if k.needs else None
            if reason:
                skipped[k.name] = reason
            else:
                runnable.append(k)
        return runnable, skipped


def pick(rng, kinds):
    return rng.choices(kinds, weights=[k.weight for k in kinds])[0]


FAULTS = Registry("fault")
OPS = Registry("traffic")
