"""The request path: client connections (``client``), their state (``session``), the executor
that serves each command by strategy (``execute``, with ``fanout`` and ``local``), the reply
queue (``replies``), flow control (``flow``), and the shared backend connections (``backend``,
``pool``). Uses ``protocol``, ``routing`` and ``observe``; nothing here imports ``cluster``.
"""
