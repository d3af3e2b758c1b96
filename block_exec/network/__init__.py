"""Tools for a network of `coreledger node`s under CometBFT: the local testnet, key files,
`coreledger send` and the queries through CometBFT's RPC."""

# Here rather than in testnet.py and rpc.py: the CLI's parser needs them on every call, and
# those modules (the signer, urllib) load only when a network command runs.
DEFAULT_BASE_PORT = 26600  # a testnet's first port (spec/network.md)
DEFAULT_NODE = "http://127.0.0.1:26657"  # CometBFT's default RPC address

