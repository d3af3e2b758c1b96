"""Tools for a network of `coreledger node`s under CometBFT: the local testnet, key files,
`coreledger send` and the queries through CometBFT's RPC."""
