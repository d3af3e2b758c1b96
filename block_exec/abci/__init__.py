"""Network mode: `coreledger node`, an ABCI 2.0 application of CometBFT v0.38 (contract:
"Network mode"). `wire` frames the socket protocol, `proto` holds the classes generated
from CometBFT's own .proto files (scripts/gen_proto.sh)."""
