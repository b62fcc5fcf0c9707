//! The `cairn.v1.ChunkService` gRPC service: thin adapters over `ChunkServer`.

use std::pin::Pin;
use std::sync::Arc;

use cairn_proto::pb;
use cairn_proto::pb::chunk_service_server::ChunkService;
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::server::ChunkServer;

/// gRPC face of a chunk server.
#[derive(Clone)]
pub struct ChunkServiceImpl {
    pub server: Arc<ChunkServer>,
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<pb::ReadResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ChunkService for ChunkServiceImpl {
    async fn write(
        &self,
        req: Request<Streaming<pb::WriteRequest>>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        Ok(Response::new(
            self.server.clone().write(req.into_inner()).await?,
        ))
    }

    async fn write_small(
        &self,
        req: Request<pb::SmallWriteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        Ok(Response::new(
            self.server.clone().write_small(req.into_inner()).await?,
        ))
    }

    type ReadStream = ReadStream;

    async fn read(
        &self,
        req: Request<pb::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let r = req.into_inner();
        cairn_common::telemetry::record_subject(format_args!(
            "chunk {} v{} [{}, +{})",
            r.chunk_id, r.version, r.offset, r.length
        ));
        let rx = self.server.clone().read(r)?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn read_small(
        &self,
        req: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        let r = req.into_inner();
        cairn_common::telemetry::record_subject(format_args!(
            "chunk {} v{} [{}, +{})",
            r.chunk_id, r.version, r.offset, r.length
        ));
        Ok(Response::new(self.server.read_small(r).await?))
    }

    async fn replica_state(
        &self,
        req: Request<pb::ReplicaStateRequest>,
    ) -> Result<Response<pb::ReplicaStateResponse>, Status> {
        let r = req.into_inner();
        cairn_common::telemetry::record_subject(format_args!("chunk {}", r.chunk_id));
        Ok(Response::new(self.server.replica_state(r).await?))
    }

    async fn set_version(
        &self,
        req: Request<pb::SetVersionRequest>,
    ) -> Result<Response<pb::SetVersionResponse>, Status> {
        let r = req.into_inner();
        cairn_common::telemetry::record_subject(format_args!(
            "chunk {} v{}->v{}",
            r.chunk_id, r.from, r.to
        ));
        self.server.set_version(r).await?;
        Ok(Response::new(pb::SetVersionResponse {}))
    }
}
