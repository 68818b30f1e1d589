// Every failure sluice reports has a stable code (SLUICE_E_*), listed in docs/errors.md.
// test/unit/errors.test.ts checks that the docs list every code defined here.

export const ERROR_CODES = {
  SLUICE_E_CONFIG_PARSE: 'the config file is not valid YAML or JSON',
  SLUICE_E_CONFIG_INVALID:
    'the config does not satisfy the schema or a semantic rule (details list every problem)',
  SLUICE_E_IO: 'a file or process could not be read, written or run',
  // Config issue codes: one per problem kind, each reported as an Issue inside SLUICE_E_CONFIG_INVALID.
  SLUICE_E_CONFIG_UNKNOWN_KEY: 'a config object has a key the format does not define (often a typo)',
  SLUICE_E_CONFIG_MISSING: 'a required config field is missing',
  SLUICE_E_CONFIG_TYPE: 'a config value has the wrong type (e.g. a string where a number belongs)',
  SLUICE_E_CONFIG_ENUM: 'a config value is not one of the allowed choices (hashMode, role, protocol, state)',
  SLUICE_E_CONFIG_NAME:
    'a node or load balancer name is empty, too long or has characters outside [A-Za-z0-9_.-]',
  SLUICE_E_CONFIG_INVALID_IP: 'an address is not a valid IPv4 or IPv6 address',
  SLUICE_E_CONFIG_ADDRESS_UNUSABLE:
    'an address is unspecified, in 0/8, loopback, link-local, multicast, reserved (240/4), broadcast or IPv4-mapped IPv6',
  SLUICE_E_CONFIG_TUNNEL_NOT_IPV4: "a node's tunnelIp is not IPv4 (the underlay is IPv4)",
  SLUICE_E_CONFIG_FAMILY_MISMATCH: "a backend's address family differs from its load balancer's VIP family",
  SLUICE_E_CONFIG_PORT_RANGE: 'a port is not an integer in 1..65535',
  SLUICE_E_CONFIG_PORTS: 'a load balancer gives both `port` and `ports`, or an empty `ports` list',
  SLUICE_E_CONFIG_DUPLICATE_PORT: "a port appears twice in one load balancer's `ports`",
  SLUICE_E_CONFIG_WEIGHT: 'a backend weight is not an integer in 1..1000',
  SLUICE_E_CONFIG_SLOT_BITS: 'slotBits is not an integer in 4..16',
  SLUICE_E_CONFIG_DRAIN_WINDOW: 'drainWindowSeconds is not a number in (0, 86400]',
  SLUICE_E_CONFIG_CHAIN_LENGTH: 'chainLength is not an integer in 1..7',
  SLUICE_E_CONFIG_HEALTH_CHECK:
    "a load balancer's healthCheck has a value out of range or a field its type does not use (docs/config.md)",
  SLUICE_E_CONFIG_DUPLICATE_NODE: 'two nodes have the same name',
  SLUICE_E_CONFIG_DUPLICATE_TUNNEL_IP: 'two nodes have the same tunnelIp',
  SLUICE_E_CONFIG_UNKNOWN_HOST: "a backend's host is not the name of any node",
  SLUICE_E_CONFIG_BACKEND_ON_GATEWAY: "a backend's host is a gateway node (backends run on hosts)",
  SLUICE_E_CONFIG_BACKEND_HOST_CONFLICT: 'one backend address is placed on two different hosts',
  SLUICE_E_CONFIG_MAC: "a backend's mac is not a unicast MAC address (six hex bytes, colon separated)",
  SLUICE_E_CONFIG_MAC_CONFLICT: 'one backend address is given two different MACs',
  SLUICE_E_CONFIG_DUPLICATE_LB: 'two load balancers have the same name',
  SLUICE_E_CONFIG_DUPLICATE_LISTENER: 'two load balancers claim the same VIP, protocol and port',
  SLUICE_E_CONFIG_DUPLICATE_BACKEND: 'one load balancer lists the same backend address and port twice',
  SLUICE_E_CONFIG_ADDRESS_CONFLICT:
    "a VIP or a backend address equals a node's tunnelIp, or a backend address is a VIP",
  SLUICE_E_CONFIG_TOO_MANY_BACKENDS: 'a load balancer has more than 65535 backends',
  SLUICE_E_CONFIG_TOO_LARGE:
    'the slots of all load balancers (2^slotBits each, more for large pools) are over the budget (4,194,304)',
  SLUICE_E_CONFIG_NO_GATEWAY: 'there are load balancers but no gateway node',
  SLUICE_E_CONFIG_NO_HOST: 'there are load balancers but no host node',
  SLUICE_E_LAB_COMMAND:
    'a command the lab ran (ip, ovs-*, a namespace script) failed or timed out; the message names it',
  SLUICE_E_XDP:
    'the XDP gateway: its program could not be built or loaded (clang, bpftool), or a generation does not fit its maps; the message names what',
  SLUICE_E_LAB_NOT_ROOT: 'the lab needs root (network namespaces, Open vSwitch)',
  SLUICE_E_LAB_EXISTS: 'a lab with this prefix already exists (run `sluice lab down` first)',
  SLUICE_E_LAB_NOT_FOUND: 'no running lab with this prefix',
  SLUICE_E_LAB_CONFIG:
    "a lab config value breaks a lab rule (a size or the prefix out of range, a VIP with no or an unknown backend, a VIP inside the lab's fixed address plan); an issue inside SLUICE_E_CONFIG_INVALID or SLUICE_E_USAGE",
  SLUICE_E_USAGE: 'a command was called with wrong arguments',
  SLUICE_E_INTERNAL:
    'an unexpected failure (a bug or a runtime limit); the CLI prints one line, the stack only with SLUICE_DEBUG=1',
  // OVSDB client (src/ovsdb): each thrown as OvsdbError (src/ovsdb/errors.ts).
  SLUICE_E_OVSDB_CONNECT: 'no OVSDB remote could be reached (or none is a usable cluster member) in time',
  SLUICE_E_OVSDB_DISCONNECTED: 'the connection dropped before the reply (a transaction may have committed)',
  SLUICE_E_OVSDB_TIMEOUT: 'an OVSDB request got no reply in time',
  SLUICE_E_OVSDB_RPC: 'ovsdb-server answered a JSON-RPC request with an error (e.g. unknown database)',
  SLUICE_E_OVSDB_TRANSACTION: 'an OVSDB transaction failed (the error names the failing op index and cause)',
  SLUICE_E_OVSDB_PROTOCOL: 'ovsdb-server sent something that is not valid RFC 7047 JSON-RPC',
  SLUICE_E_OVSDB_VALUE: 'a value does not fit its OVSDB column type, or names an unknown table or column',
  SLUICE_E_OVSDB_CLOSED: 'the OVSDB client was closed',
  // OpenFlow compiler (src/compile) and applier (src/openflow).
  SLUICE_E_COMPILE_FACTS:
    'the node facts do not fit the config (unknown node or role, no port for a local backend)',
  SLUICE_E_NODE_FACTS:
    "the node's own OVSDB lacks or contradicts what the agent needs (a sluice-* external_id, a port, an ofport); the message names the row and key",
  SLUICE_E_OPENFLOW_DUMP: 'ovs-ofctl could not read the installed flows, groups or TLV map of a bridge',
  SLUICE_E_OPENFLOW_TLV: 'the Geneve TLV map could not be installed or conflicts with an existing mapping',
  SLUICE_E_OPENFLOW_CONFLICT:
    'a desired flow has the same table, priority and match as a flow sluice does not own',
  SLUICE_E_OPENFLOW_REJECTED:
    'ovs-vswitchd rejected the bundle; nothing was changed (details: ovs-ofctl stderr)',
  SLUICE_E_OPENFLOW_VERIFY:
    'after a committed bundle the installed state still differs from the desired state',
  SLUICE_E_OPENFLOW_REVALIDATE: 'ovs-appctl revalidator/wait failed',
  // Operator CLI against the store (src/cli/store-commands.ts).
  SLUICE_E_STORE_NOT_FOUND:
    'the load balancer, backend or node a command names is not in the desired state (or nothing is published yet)',
  SLUICE_E_STORE_EXISTS: 'the load balancer, backend or node a command adds is already in the desired state',
  SLUICE_E_STORE_CONFLICT:
    'the desired state kept changing under an edit (concurrent writers won the desired_cfg guard every retry)',
  // sluice rollout status --watch (src/cli/rollout.ts).
  SLUICE_E_ROLLOUT_STUCK:
    'a rollout did not finish within --timeout (the message names the nodes or the step it waits for)',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** One problem found in input, with the path where it was found (e.g. `loadBalancers[0].backends[2].port`). */
export interface Issue {
  readonly code: string;
  readonly path: string;
  readonly message: string;
}

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly issues: readonly Issue[];
  constructor(code: ErrorCode, message: string, issues: readonly Issue[] = []) {
    super(message);
    this.name = 'SluiceError';
    this.code = code;
    this.issues = issues;
  }
}
