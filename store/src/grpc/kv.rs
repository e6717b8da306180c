//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn and Compact.

use prost::Message;
use tonic::{Request, Response, Status};

use super::{convert, instrument};
use crate::error::StoreError;
use crate::limits;
use crate::mvcc::{CompactionRequest, MvccError, WriteRequest, WriteResponse};
use crate::node::Store;
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::kv_server::Kv;

pub struct KvService {
    store: Store,
}

impl KvService {
    pub fn new(store: Store) -> KvService {
        KvService { store }
    }

    /// etcd bounds the size of what goes through Raft, not of reads.
    fn check_size(message: &impl Message) -> Result<(), Status> {
        if message.encoded_len() > limits::REQUEST_BYTES_MAX {
            return Err(StoreError::RequestTooLarge.into());
        }
        Ok(())
    }

    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, Status> {
        Ok(self.store.write(request).await?)
    }
}

fn unexpected(response: &WriteResponse) -> Status {
    Status::internal(format!("skiff: unexpected response kind {response:?}"))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let request = request.into_inner();
        instrument(self.store.metrics(), "Range", async {
            if request.key.is_empty() {
                return Err(StoreError::Mvcc(MvccError::EmptyKey).into());
            }
            let serializable = request.serializable;
            let response = self.store.range(convert::range_request(request), serializable).await?;
            let header = self.store.header(response.header_revision);
            Ok(Response::new(convert::range_response(response, header)))
        })
        .await
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let request = request.into_inner();
        instrument(self.store.metrics(), "Put", async {
            Self::check_size(&request)?;
            match self.write(WriteRequest::Put(convert::put_request(request))).await? {
                WriteResponse::Put(r) => {
                    let header = self.store.header(r.header_revision);
                    Ok(Response::new(convert::put_response(r, header)))
                }
                other => Err(unexpected(&other)),
            }
        })
        .await
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let request = request.into_inner();
        instrument(self.store.metrics(), "DeleteRange", async {
            Self::check_size(&request)?;
            let write = WriteRequest::DeleteRange(convert::delete_request(request));
            match self.write(write).await? {
                WriteResponse::DeleteRange(r) => {
                    let header = self.store.header(r.header_revision);
                    Ok(Response::new(convert::delete_response(r, header)))
                }
                other => Err(unexpected(&other)),
            }
        })
        .await
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let request = request.into_inner();
        instrument(self.store.metrics(), "Txn", async {
            Self::check_size(&request)?;
            let txn = convert::txn_request(request)
                .map_err(|reason| Status::invalid_argument(format!("etcdserver: {reason}")))?;
            match self.write(WriteRequest::Txn(txn)).await? {
                WriteResponse::Txn(r) => {
                    let header = self.store.header(r.header_revision);
                    Ok(Response::new(convert::txn_response(r, header)))
                }
                other => Err(unexpected(&other)),
            }
        })
        .await
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let request = request.into_inner();
        instrument(self.store.metrics(), "Compact", async {
            let write = WriteRequest::Compaction(CompactionRequest { revision: request.revision });
            match self.write(write).await? {
                WriteResponse::Compaction(r) => {
                    let header = convert::header(self.store.header(r.header_revision));
                    Ok(Response::new(pb::CompactionResponse { header }))
                }
                other => Err(unexpected(&other)),
            }
        })
        .await
    }
}
