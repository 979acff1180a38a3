// An in-process subtensor node for tests: a @polkadot/api provider answering the
// JSON-RPC calls the miner client makes, from the real finney metadata and a
// storage map the test fills. Submitted extrinsics are kept for inspection and
// "included" in the next block with ExtrinsicSuccess or a chosen module error.
import { u8aToHex, hexToU8a, u8aConcat, compactToU8a, bnToU8a, compactStripLength } from '@polkadot/util';
import { expandMetadata } from '@polkadot/types';
import type { Metadata } from '@polkadot/types';
import { blake2AsHex } from '@polkadot/util-crypto';
import type { ProviderInterface, ProviderInterfaceCallback, ProviderInterfaceEmitCb, ProviderInterfaceEmitted } from '@polkadot/rpc-provider/types';
import { registryFromMetadataHex } from './chain-metadata';

type Decorated = ReturnType<typeof expandMetadata>;

export class FakeSubtensor implements ProviderInterface {
  readonly hasSubscriptions = true;
  readonly isClonable = false;
  isConnected = true;
  readonly registry;
  readonly d: Decorated;
  readonly storage = new Map<string, string>(); // hex key -> hex value
  readonly submitted: string[] = [];
  /** when set, the next extrinsic fails with this module error: [pallet name, error name] */
  failWith: [string, string] | null = null;
  best = 1000;
  unknown: string[] = [];
  private readonly blocks = new Map<string, { number: number; extrinsics: string[] }>();
  private readonly subs = new Map<string, { method: string; cb: ProviderInterfaceCallback }>();
  private nextSub = 1;
  private readonly metadataHex: string;
  private readonly metadata: Metadata;
  private readonly eventsKey: string;
  private readonly genesis = blake2AsHex('fake-subtensor-genesis');

  /** metadataV15Hex: the Metadata_metadata_at_version(15) result, served as a real node does. */
  constructor(metadataHex: string, private readonly metadataV15Hex?: string) {
    this.metadataHex = metadataHex.trim();
    const { registry, metadata } = registryFromMetadataHex(this.metadataHex);
    this.registry = registry;
    this.metadata = metadata;
    this.d = expandMetadata(registry, metadata);
    this.eventsKey = this.keyOf(this.d.query.system.events as never, []);
  }

  /** Sets a storage value of a decorated entry, e.g. set(d.query.subtensorModule.uids, [3, addr], value). */
  set(entry: (...args: unknown[]) => Uint8Array, args: unknown[], value: Uint8Array): void {
    this.storage.set(this.keyOf(entry, args), u8aToHex(value));
  }

  keyOf(entry: (...args: unknown[]) => Uint8Array, args: unknown[]): string {
    const withLen = entry(...args);
    // decorated keys carry a compact length prefix
    return u8aToHex(compactStripLength(withLen)[1]);
  }

  private hashOf(n: number): string {
    return n === 0 ? this.genesis : blake2AsHex(`block-${n}`);
  }

  private header(n: number) {
    return {
      parentHash: this.hashOf(Math.max(0, n - 1)),
      number: `0x${n.toString(16)}`,
      stateRoot: blake2AsHex(`state-${n}`),
      extrinsicsRoot: blake2AsHex(`ext-${n}`),
      digest: { logs: [] },
    };
  }

  private numberOf(hash?: string): number {
    if (!hash) return this.best;
    for (let n = 0; n <= this.best; n++) if (this.hashOf(n) === hash) return n;
    return this.best;
  }

  private palletIndex(name: string): number {
    const p = this.metadata.asLatest.pallets.find((x) => x.name.toString() === name);
    if (!p) throw new Error(`no pallet ${name}`);
    return p.index.toNumber();
  }

  private eventsFor(failed: [string, string] | null): string {
    const system = this.palletIndex('System');
    const info = new Uint8Array([0, 0, 0, 0]); // weight (two compact zeros), class Normal, pays Yes
    let event: Uint8Array;
    if (failed) {
      const errors = (this.d.errors as unknown as Record<string, Record<string, { meta: { index: { toNumber(): number } } }>>)[failed[0].charAt(0).toLowerCase() + failed[0].slice(1)];
      const errIndex = errors[failed[1]].meta.index.toNumber();
      // DispatchError::Module (variant 3) { index: u8, error: [u8; 4] }
      event = u8aConcat([system, 1], [3, this.palletIndex(failed[0]), errIndex, 0, 0, 0], info);
    } else {
      event = u8aConcat([system, 0], info);
    }
    const record = u8aConcat([0], bnToU8a(0, { bitLength: 32 }), event, compactToU8a(0));
    return u8aToHex(u8aConcat(compactToU8a(1), record));
  }

  private storageAt(key: string, at?: string): string | null {
    if (key === this.eventsKey) {
      const b = at ? this.blocks.get(at) : undefined;
      return b ? this.eventsFor((b as unknown as { failed: [string, string] | null }).failed) : '0x00';
    }
    return this.storage.get(key) ?? null;
  }

  async send<T = unknown>(method: string, params: unknown[]): Promise<T> {
    const p = params as string[];
    const r = ((): unknown => {
      switch (method) {
        case 'rpc_methods':
          return {
            methods: [
              'author_submitAndWatchExtrinsic', 'author_unwatchExtrinsic', 'chain_getBlock', 'chain_getBlockHash', 'chain_getFinalizedHead',
              'chain_getHeader', 'chain_subscribeNewHeads', 'chain_subscribeFinalizedHeads', 'chain_subscribeRuntimeVersion',
              'state_call', 'state_getMetadata', 'state_getRuntimeVersion', 'state_getStorage', 'state_queryStorageAt', 'state_subscribeRuntimeVersion',
              'state_subscribeStorage', 'system_accountNextIndex', 'system_chain', 'system_chainType', 'system_properties', 'rpc_methods',
            ],
          };
        case 'state_getMetadata':
          return this.metadataHex;
        case 'state_getRuntimeVersion':
          return { specName: 'node-subtensor', implName: 'node-subtensor', authoringVersion: 1, specVersion: 343, implVersion: 1, apis: this.metadataV15Hex ? [['0x37e397fc7c91f5e4', 2]] : [], transactionVersion: 1, stateVersion: 1 };
        case 'system_chain':
          return 'Bittensor';
        case 'system_properties':
          return { ss58Format: 42, tokenDecimals: 9, tokenSymbol: 'TAO' };
        case 'system_chainType':
          return 'Live';
        case 'system_accountNextIndex':
          return 0;
        case 'chain_getBlockHash':
          return this.hashOf(p[0] === undefined ? this.best : Number(p[0]));
        case 'chain_getFinalizedHead':
          return this.hashOf(this.best);
        case 'chain_getHeader':
          return this.header(this.numberOf(p[0]));
        case 'chain_getBlock': {
          const n = this.numberOf(p[0]);
          return { block: { header: this.header(n), extrinsics: this.blocks.get(this.hashOf(n))?.extrinsics ?? [] }, justifications: null };
        }
        case 'state_call':
          if (p[0] === 'Metadata_metadata_versions') return '0x080e0000000f000000'; // Vec<u32> [14, 15]
          if (p[0] === 'Metadata_metadata_at_version' && p[1] === '0x0f000000' && this.metadataV15Hex) return this.metadataV15Hex.trim();
          this.unknown.push(`state_call ${p[0]}`);
          throw new Error(`fake subtensor: no runtime call ${p[0]}`);
        case 'state_queryStorageAt': {
          const keys = p[0] as unknown as string[];
          return [{ block: this.hashOf(this.numberOf(p[1])), changes: keys.map((k) => [k, this.storageAt(k, p[1])]) }];
        }
        case 'state_getStorage': {
          return this.storageAt(p[0], p[1]);
        }
        default:
          this.unknown.push(method);
          throw new Error(`fake subtensor: no method ${method}`);
      }
    })();
    return r as T;
  }

  async subscribe(type: string, method: string, params: unknown[], cb: ProviderInterfaceCallback): Promise<string> {
    const id = `sub-${this.nextSub++}`;
    this.subs.set(id, { method, cb });
    const emit = (v: unknown) => setImmediate(() => cb(null, v));
    switch (method) {
      case 'chain_subscribeRuntimeVersion':
      case 'state_subscribeRuntimeVersion':
        emit(await this.send('state_getRuntimeVersion', []));
        break;
      case 'chain_subscribeNewHead':
      case 'chain_subscribeNewHeads':
      case 'chain_subscribeFinalizedHeads':
        emit(this.header(this.best));
        break;
      case 'state_subscribeStorage': {
        const keys = params[0] as string[];
        emit({ block: this.hashOf(this.best), changes: keys.map((k) => [k, this.storage.get(k) ?? null]) });
        break;
      }
      case 'author_submitAndWatchExtrinsic': {
        const xt = params[0] as string;
        this.submitted.push(xt);
        this.best += 1;
        const hash = this.hashOf(this.best);
        this.blocks.set(hash, Object.assign({ number: this.best, extrinsics: [xt] }, { failed: this.failWith }));
        this.failWith = null;
        emit('ready');
        setTimeout(() => cb(null, { inBlock: hash }), 5);
        break;
      }
      default:
        this.unknown.push(method);
        throw new Error(`fake subtensor: no subscription ${method}`);
    }
    return id;
  }

  async unsubscribe(_type: string, _method: string, id: number | string): Promise<boolean> {
    return this.subs.delete(String(id));
  }

  clone(): ProviderInterface {
    throw new Error('not clonable');
  }

  async connect(): Promise<void> {}

  async disconnect(): Promise<void> {
    this.isConnected = false;
  }

  on(type: ProviderInterfaceEmitted, sub: ProviderInterfaceEmitCb): () => void {
    if (type === 'connected') setImmediate(() => sub());
    return () => undefined;
  }
}

export { hexToU8a };
