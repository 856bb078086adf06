import type { Redis } from 'ioredis';

/** Every value stored in Redis, whatever its type, as byte strings named by key (and field). */
export async function allRedisValues(r: Redis): Promise<{ path: string; bytes: Buffer }[]> {
  const out: { path: string; bytes: Buffer }[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await r.scan(cursor, 'COUNT', 500);
    cursor = next;
    for (const key of batch) {
      const type = await r.type(key);
      if (type === 'string') {
        // a key the queue deleted between the scan and the read holds nothing any more
        const v = await r.getBuffer(key);
        if (v) out.push({ path: key, bytes: v });
      }
      else if (type === 'hash') {
        const h = await r.hgetallBuffer(key);
        for (const [f, v] of Object.entries(h)) out.push({ path: `${key}#${f}`, bytes: v });
      } else if (type === 'list') (await r.lrangeBuffer(key, 0, -1)).forEach((v, i) => out.push({ path: `${key}[${i}]`, bytes: v }));
      else if (type === 'set') (await r.smembersBuffer(key)).forEach((v, i) => out.push({ path: `${key}{${i}}`, bytes: v }));
      else if (type === 'zset') (await r.zrangeBuffer(key, 0, -1)).forEach((v, i) => out.push({ path: `${key}<${i}>`, bytes: v }));
      else if (type === 'stream') {
        const entries = (await r.xrangeBuffer(key, '-', '+')) as [Buffer, Buffer[]][];
        for (const [id, fields] of entries) fields.forEach((v, i) => out.push({ path: `${key}@${id.toString()}[${i}]`, bytes: v }));
      } else out.push({ path: `${key} (${type})`, bytes: Buffer.alloc(0) });
    }
  } while (cursor !== '0');
  return out;
}
