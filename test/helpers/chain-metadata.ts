// Subtensor's runtime metadata offline: a registry loaded from its hex
// (state_getMetadata) and storage values decoded from raw bytes, as the chain
// returns them. Calls and storage keys come from expandMetadata(registry, metadata).
import type { Codec, Registry } from '@polkadot/types/types';
import { TypeRegistry, Metadata } from '@polkadot/types';
import { hexToU8a, isHex } from '@polkadot/util';
import { SUBTENSOR_SIGNED_EXTENSIONS } from '../../src/chain/codec';

/** A registry with subtensor's runtime metadata loaded from its hex (state_getMetadata). */
export function registryFromMetadataHex(hex: string): { registry: TypeRegistry; metadata: Metadata } {
  const clean = hex.trim();
  if (!isHex(clean)) throw new Error('metadata is not a hex string');
  const registry = new TypeRegistry();
  const metadata = new Metadata(registry, hexToU8a(clean));
  registry.setMetadata(metadata, undefined, SUBTENSOR_SIGNED_EXTENSIONS);
  return { registry, metadata };
}

/** Decodes a storage value of the given entry from raw bytes, as the chain returns it. */
export function decodeStorageValue(registry: Registry, entry: { meta: { type: { asMap: { value: { toNumber(): number } } }; modifier: { isOptional: boolean } } }, raw: Uint8Array): Codec {
  const valueType = registry.createLookupType(entry.meta.type.asMap.value.toNumber());
  const inner = raw.length === 0 ? null : registry.createType(valueType, raw);
  if (entry.meta.modifier.isOptional) {
    return registry.createType(`Option<${valueType}>`, inner ?? undefined);
  }
  return inner ?? registry.createType(valueType);
}
