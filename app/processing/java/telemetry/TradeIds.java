package telemetry;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One window's trade ids, each with its content hash: an open-addressing table of primitive longs.
 *
 * <p>Why not a HashMap: every batch that touches a window decodes its ids from the state and encodes them
 * back. Profiled on a replay, boxing them into a HashMap (put, then iterate) took a tenth of the
 * processor's stage; here a window of 5,000 trades is two arrays and no object per trade.
 */
final class TradeIds {
  private static final double MAX_LOAD = 0.5;
  private long[] ids;
  private long[] hashes;
  private boolean[] used;
  private int shift; // 64 - log2(capacity): the hash's top bits pick the slot
  private int size;

  TradeIds(int expected) {
    int capacity = Integer.highestOneBit(Math.max(16, (int) (expected / MAX_LOAD)) - 1) << 1;
    ids = new long[capacity];
    hashes = new long[capacity];
    used = new boolean[capacity];
    shift = Long.numberOfLeadingZeros(capacity) + 1;
  }

  /** The ids and hashes as the state stores them: two little-endian int64 arrays, pair by pair. */
  static TradeIds decode(byte[] idBytes, byte[] hashBytes) {
    ByteBuffer idBuffer = ByteBuffer.wrap(idBytes).order(ByteOrder.LITTLE_ENDIAN);
    ByteBuffer hashBuffer = ByteBuffer.wrap(hashBytes).order(ByteOrder.LITTLE_ENDIAN);
    TradeIds table = new TradeIds(idBytes.length / Long.BYTES);
    while (idBuffer.hasRemaining()) {
      table.put(idBuffer.getLong(), hashBuffer.getLong());
    }
    return table;
  }

  /** Where `id` is held, for hashAt; -1 when the window does not hold it. */
  int find(long id) {
    int slot = slot(id);
    return used[slot] ? slot : -1;
  }

  long hashAt(int found) {
    return hashes[found];
  }

  void put(long id, long hash) {
    int slot = slot(id);
    if (!used[slot]) {
      if (size + 1 > ids.length * MAX_LOAD) {
        grow();
        slot = slot(id);
      }
      used[slot] = true;
      ids[slot] = id;
      size++;
    }
    hashes[slot] = hash;
  }

  /** {ids, hashes}: the state's two columns. */
  byte[][] encode() {
    ByteBuffer idBuffer = ByteBuffer.allocate(size * Long.BYTES).order(ByteOrder.LITTLE_ENDIAN);
    ByteBuffer hashBuffer = ByteBuffer.allocate(size * Long.BYTES).order(ByteOrder.LITTLE_ENDIAN);
    for (int slot = 0; slot < used.length; slot++) {
      if (used[slot]) {
        idBuffer.putLong(ids[slot]);
        hashBuffer.putLong(hashes[slot]);
      }
    }
    return new byte[][] {idBuffer.array(), hashBuffer.array()};
  }

  /** The slot holding `id`, or the empty slot where it would go (linear probing). */
  private int slot(long id) {
    int mask = ids.length - 1;
    // Trade ids are consecutive: the multiplication spreads them over the whole table.
    int slot = (int) ((id * 0x9E3779B97F4A7C15L) >>> shift);
    while (used[slot] && ids[slot] != id) {
      slot = (slot + 1) & mask;
    }
    return slot;
  }

  private void grow() {
    long[] oldIds = ids;
    long[] oldHashes = hashes;
    boolean[] oldUsed = used;
    ids = new long[oldIds.length * 2];
    hashes = new long[oldIds.length * 2];
    used = new boolean[oldIds.length * 2];
    shift--;
    size = 0;
    for (int slot = 0; slot < oldUsed.length; slot++) {
      if (oldUsed[slot]) {
        put(oldIds[slot], oldHashes[slot]);
      }
    }
  }
}
