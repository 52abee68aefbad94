package arrowflow.peers;

import java.io.File;
import java.lang.management.ManagementFactory;
import java.net.URI;
import java.sql.Timestamp;
import java.time.LocalDateTime;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimiterStrategy;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.datagen.source.DataGeneratorSource;
import org.apache.flink.connector.datagen.source.GeneratorFunction;
import org.apache.flink.connector.file.sink.FileSink;
import org.apache.flink.connector.jdbc.JdbcConnectionOptions;
import org.apache.flink.connector.jdbc.JdbcExecutionOptions;
import org.apache.flink.connector.jdbc.core.datastream.sink.JdbcSink;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.core.fs.Path;
import org.apache.flink.formats.avro.typeutils.GenericRecordAvroTypeInfo;
import org.apache.flink.formats.json.JsonDeserializationSchema;
import org.apache.flink.formats.json.JsonSerializationSchema;
import org.apache.flink.formats.parquet.avro.AvroParquetWriters;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.filesystem.OutputFileConfig;
import org.apache.flink.streaming.api.functions.sink.filesystem.bucketassigners.BasePathBucketAssigner;

/**
 * The Flink side of benchmarks/peers: {@code PeersJob SPEC.json} runs one workload in a local
 * MiniCluster (DataStream API, the connectors' documented builders) and prints {@code PEERS_RESULT
 * {json}} like the Python jobs. The spec is the JSON the harness writes (benchmarks/peers/jobs/_common.py
 * Spec). {@code seconds} is Flink's own JobExecutionResult.getNetRuntime (MiniCluster start-up
 * excluded); {@code wall_seconds} and {@code cpu_seconds} run from before the environment is built.
 */
public final class PeersJob {
    /** The Parquet file schema: the 8 columns, {@code ts} as a naive microsecond timestamp. */
    static final String AVRO_SCHEMA = "{\"type\":\"record\",\"name\":\"Row\",\"fields\":["
            + "{\"name\":\"id\",\"type\":\"long\"},{\"name\":\"price\",\"type\":\"double\"},"
            + "{\"name\":\"name\",\"type\":\"string\"},{\"name\":\"active\",\"type\":\"boolean\"},"
            + "{\"name\":\"ts\",\"type\":{\"type\":\"long\",\"logicalType\":\"local-timestamp-micros\"}},"
            + "{\"name\":\"qty\",\"type\":\"int\"},{\"name\":\"code\",\"type\":\"string\"},"
            + "{\"name\":\"score\",\"type\":\"double\"}]}";
    static final double PRICE_LIMIT = 5000.0;
    static final String COLUMNS = "id, price, name, active, ts, qty, code, score";

    public static void main(String[] args) {
        try {
            run(args);
        } catch (Throwable t) {
            t.printStackTrace();
            // A failed job must end the JVM: the MiniCluster's non-daemon threads would keep it alive.
            System.exit(1);
        }
        // The MiniCluster's non-daemon threads may linger: the job is done.
        System.exit(0);
    }

    static void run(String[] args) throws Exception {
        JsonNode spec = new ObjectMapper().readTree(new File(args[0]));
        long t0 = System.nanoTime();
        long c0 = cpuNanos();
        boolean eos = spec.get("guarantee").asText().equals("exactly-once");
        int parallelism = spec.get("parallelism").asInt();
        String workload = spec.get("workload").asText();
        String scratch = spec.get("scratch_dir").asText();

        Map<String, String> conf = new HashMap<>();
        // Small memory budgets (the machine is shared) and loopback-only sockets.
        conf.put("taskmanager.memory.managed.size", "32m");
        conf.put("taskmanager.memory.network.min", "32m");
        conf.put("taskmanager.memory.network.max", "32m");
        conf.put("jobmanager.bind-host", "127.0.0.1");
        conf.put("taskmanager.bind-host", "127.0.0.1");
        conf.put("taskmanager.host", "127.0.0.1");
        conf.put("rest.bind-address", "127.0.0.1");
        conf.put("rest.address", "127.0.0.1");
        // The REST endpoint and blob server of the MiniCluster take ports: PEERS_FLINK_PORTS (a Flink port
        // range such as "38800-38899"; default "0", any free port).
        String ports = System.getenv().getOrDefault("PEERS_FLINK_PORTS", "0");
        conf.put("rest.bind-port", ports);
        conf.put("blob.server.port", ports);
        conf.put("execution.checkpointing.storage", "filesystem");
        conf.put("execution.checkpointing.dir", new File(scratch, "checkpoints").toURI().toString());
        StreamExecutionEnvironment env =
                StreamExecutionEnvironment.createLocalEnvironment(parallelism, Configuration.fromMap(conf));
        long intervalMs = Math.round(spec.get("checkpoint_interval").asDouble() * 1000);
        env.enableCheckpointing(intervalMs, eos ? CheckpointingMode.EXACTLY_ONCE : CheckpointingMode.AT_LEAST_ONCE);

        switch (workload) {
            case "parquet" -> parquet(env, spec);
            case "postgres" -> postgres(env, spec, eos);
            case "produce" -> produce(env, spec, eos);
            default -> throw new IllegalArgumentException("unknown workload " + workload);
        }
        JobExecutionResult result = env.execute("peers-" + workload);
        Map<String, Object> out = new LinkedHashMap<>();
        // The job's time is Flink's own net runtime (job submission to finish, as the JobMaster counts
        // it): the MiniCluster's start-up, which a Flink user running a cluster does not pay per job, is
        // left out; wall_seconds includes it.
        out.put("seconds", result.getNetRuntime(TimeUnit.MILLISECONDS) / 1e3);
        out.put("wall_seconds", (System.nanoTime() - t0) / 1e9);
        out.put("cpu_seconds", (cpuNanos() - c0) / 1e9);
        out.put("peak_rss_mb", peakRssMb());
        System.out.println("PEERS_RESULT " + new ObjectMapper().writeValueAsString(out));
        System.out.flush();
    }

    /** VmHWM of this JVM (the harness cannot take it from wait4: see _common.peak_rss_mb). */
    static Double peakRssMb() {
        try {
            for (String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) / 1024.0;
                }
            }
        } catch (java.io.IOException e) {
            // reported as null
        }
        return null;
    }

    static long cpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
                .getProcessCpuTime();
    }

    static DataStream<Event> kafkaEvents(StreamExecutionEnvironment env, JsonNode spec) {
        KafkaSource<Event> source = KafkaSource.<Event>builder()
                .setBootstrapServers(spec.get("bootstrap").asText())
                .setTopics(spec.get("topic").asText())
                .setGroupId(spec.get("group_id").asText())
                .setStartingOffsets(OffsetsInitializer.earliest())
                .setBounded(OffsetsInitializer.latest())
                .setValueOnlyDeserializer(new JsonDeserializationSchema<>(Event.class))
                .build();
        return env.fromSource(source, WatermarkStrategy.noWatermarks(), "kafka");
    }

    /** Event -> Avro GenericRecord for the Parquet writer (the schema is parsed once per task). */
    static final class ToRecord extends RichMapFunction<Event, GenericRecord> {
        private transient Schema schema;

        @Override
        public void open(OpenContext ctx) {
            schema = new Schema.Parser().parse(AVRO_SCHEMA);
        }

        @Override
        public GenericRecord map(Event e) {
            GenericRecord r = new GenericData.Record(schema);
            r.put(0, e.id);
            r.put(1, e.price);
            r.put(2, e.name);
            r.put(3, e.active);
            r.put(4, e.tsMicros());
            r.put(5, e.qty);
            r.put(6, e.code);
            r.put(7, e.score);
            return r;
        }
    }

    static void parquet(StreamExecutionEnvironment env, JsonNode spec) {
        Schema schema = new Schema.Parser().parse(AVRO_SCHEMA);
        FileSink<GenericRecord> sink = FileSink
                .forBulkFormat(new Path(new File(spec.get("out_dir").asText()).toURI()),
                        AvroParquetWriters.forGenericRecord(schema))
                .withBucketAssigner(new BasePathBucketAssigner<>())
                .withOutputFileConfig(OutputFileConfig.builder().withPartPrefix("part").withPartSuffix(".parquet").build())
                .build();
        kafkaEvents(env, spec)
                .filter(e -> e.price < PRICE_LIMIT)
                .map(new ToRecord())
                .returns(new GenericRecordAvroTypeInfo(schema))
                .sinkTo(sink);
    }

    static void postgres(StreamExecutionEnvironment env, JsonNode spec, boolean eos) {
        URI dsn = URI.create(spec.get("pg_dsn").asText());
        String url = "jdbc:postgresql://" + dsn.getHost() + ":" + dsn.getPort() + dsn.getPath()
                + "?reWriteBatchedInserts=true";
        String user = dsn.getUserInfo() == null ? "postgres" : dsn.getUserInfo().split(":")[0];
        String table = spec.get("pg_table").asText();
        String sql = "INSERT INTO " + table + " (" + COLUMNS + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
        if (eos) {
            // Exactly-once the way arrowflow's run gets it: idempotent upserts on the key.
            sql += " ON CONFLICT (id) DO UPDATE SET price = EXCLUDED.price, name = EXCLUDED.name, "
                    + "active = EXCLUDED.active, ts = EXCLUDED.ts, qty = EXCLUDED.qty, code = EXCLUDED.code, "
                    + "score = EXCLUDED.score";
        }
        JdbcSink<Event> sink = JdbcSink.<Event>builder()
                .withQueryStatement(sql, (ps, e) -> {
                    ps.setLong(1, e.id);
                    ps.setDouble(2, e.price);
                    ps.setString(3, e.name);
                    ps.setBoolean(4, e.active);
                    ps.setTimestamp(5, Timestamp.valueOf(LocalDateTime.parse(e.ts)));
                    ps.setInt(6, e.qty);
                    ps.setString(7, e.code);
                    ps.setDouble(8, e.score);
                })
                .withExecutionOptions(JdbcExecutionOptions.builder()
                        .withBatchSize(5000).withBatchIntervalMs(200).withMaxRetries(3).build())
                .buildAtLeastOnce(new JdbcConnectionOptions.JdbcConnectionOptionsBuilder()
                        .withUrl(url).withDriverName("org.postgresql.Driver").withUsername(user).build());
        kafkaEvents(env, spec).sinkTo(sink);
    }

    /** Row i of the generated table (DataGeneratorSource calls it with every index 0..n-1). */
    static final class Generate implements GeneratorFunction<Long, Event> {
        @Override
        public Event map(Long i) {
            return Event.gen(i);
        }
    }

    static void produce(StreamExecutionEnvironment env, JsonNode spec, boolean eos) {
        DataGeneratorSource<Event> source = new DataGeneratorSource<>(
                new Generate(), spec.get("messages").asLong(), RateLimiterStrategy.noOp(),
                TypeInformation.of(Event.class));
        KafkaSink<Event> sink = KafkaSink.<Event>builder()
                .setBootstrapServers(spec.get("bootstrap").asText())
                .setRecordSerializer(KafkaRecordSerializationSchema.builder()
                        .setTopic(spec.get("topic").asText())
                        .setValueSerializationSchema(new JsonSerializationSchema<Event>())
                        .build())
                .setDeliveryGuarantee(eos ? DeliveryGuarantee.EXACTLY_ONCE : DeliveryGuarantee.AT_LEAST_ONCE)
                .setTransactionalIdPrefix(spec.get("group_id").asText() + "-tx")
                // Below the broker's transaction.max.timeout.ms (15 min); Flink's default is 1 h.
                .setProperty("transaction.timeout.ms", "600000")
                .setProperty("linger.ms", "5")
                .build();
        env.fromSource(source, WatermarkStrategy.noWatermarks(), "datagen").sinkTo(sink);
    }
}
