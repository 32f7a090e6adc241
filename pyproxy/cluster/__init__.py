"""The cluster as ZooKeeper describes it: the layout (``zkschema``), shared plumbing (``zk``,
``zklog``) and the proxy's side (``topology``: registration, watches, new routing tables). It
produces tables and never reaches into the request path.
"""
