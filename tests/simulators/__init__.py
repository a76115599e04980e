"""Counterpart simulators: an HTX exchange and a TRON energy-rental platform as real HTTP
servers in their own processes (``python -m tests.simulators.htx``,
``python -m tests.simulators.trx_energy``).

Each holds a deterministic truth made from a seed and a count, sends that truth to hookledger
as the counterpart's callbacks (signed as the configured source expects, with the counterpart's
retries, and with callbacks dropped, duplicated, reordered and mangled on purpose), answers the
counterpart's query API from the same truth, and shows it all on a control API:

- ``POST /control/start``: start sending (once); ``GET /control/status``: what was sent,
  dropped, duplicated, mangled and retried, and the query API's figures;
- ``GET /control/truth``: the truth as JSON (amounts as decimal text);
- ``GET /control/plan``: every callback with its fate (sent, dropped, mangled) and key;
- ``POST /control/late``: send some dropped callbacks now, as a late counterpart would;
- ``POST /control/faults``: rate limits and error answers injected into the query API.

``tests.simulators.process`` starts and stops them for tests; ``tests.simulators.ledger`` turns
a truth into the balances hookledger's ledger should show.
"""
