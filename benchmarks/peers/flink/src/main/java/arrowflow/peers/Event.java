package arrowflow.peers;

import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;

/**
 * One row of the benchmark table, as a Flink POJO (public fields, no-argument constructor), read from
 * and written to JSON by flink-json's Jackson schemas. {@code ts} stays ISO-8601 text in the POJO.
 */
public class Event {
    public long id;
    public double price;
    public String name;
    public boolean active;
    public String ts;
    public int qty;
    public String code;
    public double score;

    public Event() {}

    private static final String LOWER2 = "abcdefghijklmnopqrstuvwxyz".repeat(2);
    private static final String CODE2 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".repeat(2);
    private static final LocalDateTime TS_BASE = LocalDateTime.of(2026, 1, 1, 0, 0);
    private static final long YEAR_US = 365L * 24 * 3600 * 1_000_000;
    private static final DateTimeFormatter ISO_MICROS = DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss.SSSSSS");

    /** Row {@code i} of workload 3: the same values as gen_row in benchmarks/peers/jobs/_common.py. */
    public static Event gen(long i) {
        Event e = new Event();
        e.id = i;
        e.price = ((i * 7919) % 1_000_000) / 100.0;
        int nameStart = (int) (i % 26), nameLen = 15 + (int) (i % 11);
        e.name = LOWER2.substring(nameStart, nameStart + nameLen);
        e.active = i % 2 == 1;
        e.ts = ISO_MICROS.format(TS_BASE.plusNanos(((i * 1_000_003) % YEAR_US) * 1000));
        e.qty = (int) ((i * 104_729) % 2_000_001 - 1_000_000);
        int codeStart = (int) ((i * 7) % 36), codeLen = 6 + (int) (i % 5);
        e.code = CODE2.substring(codeStart, codeStart + codeLen);
        e.score = ((i * 2_654_435_761L) % 4_294_967_296L) / 4_294_967_296.0 - 0.5;
        return e;
    }

    /** {@code ts} as microseconds since the epoch (the naive timestamp read as UTC). */
    public long tsMicros() {
        LocalDateTime t = LocalDateTime.parse(ts);
        return t.toEpochSecond(ZoneOffset.UTC) * 1_000_000 + t.getNano() / 1000;
    }
}
